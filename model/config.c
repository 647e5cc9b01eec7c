/* model/config.c: placeholder, being written */
