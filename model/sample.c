/* model/sample.c: placeholder, being written */
