/* model/safetensors.c: placeholder, being written */
