/* quant/gptq.c: placeholder, being written */
