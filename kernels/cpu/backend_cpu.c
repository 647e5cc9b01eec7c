/* kernels/cpu/backend_cpu.c: placeholder, being written */
