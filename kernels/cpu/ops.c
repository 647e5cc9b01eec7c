/* kernels/cpu/ops.c: placeholder, being written */
