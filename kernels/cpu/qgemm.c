/* kernels/cpu/qgemm.c: placeholder, being written */
