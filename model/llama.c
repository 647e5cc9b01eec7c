/* model/llama.c: placeholder, being written */
