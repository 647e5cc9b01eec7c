/* quant/quantizer.c: placeholder, being written */
