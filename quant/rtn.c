/* quant/rtn.c: placeholder, being written */
