/* quant/hessian.c: placeholder, being written */
