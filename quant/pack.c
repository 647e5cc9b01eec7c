/* quant/pack.c: placeholder, being written */
