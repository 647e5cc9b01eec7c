/* model/eval.c: placeholder, being written */
