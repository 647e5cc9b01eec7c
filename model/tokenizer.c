/* model/tokenizer.c: placeholder, being written */
