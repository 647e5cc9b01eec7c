/* kernels/turns.h: turns at the compute for the jobs of one process.
 *
 * A daemon runs several jobs at once (a quantize, evaluations, the decode
 * loop of each model) on one machine's cores. Left alone, their threads
 * would all call into the kernels together: more threads than cores, each
 * BLAS call waiting on the others. With turns enabled, compute runs one
 * slice at a time (a decoder layer of a forward pass, the GPTQ of one
 * linear, a block of logits), each with every core, and the next slice
 * goes to the job that has had the least compute time so far: N busy jobs
 * each get about 1/N of the machine, however their slices differ in size.
 *
 * Off by default (libraries, clients, tests run as before); gptqd enables
 * them at start. Nested begin/end pairs on one thread count as one turn.
 * Turns are shared by time: the next one goes to the waiting thread that
 * has held the compute least (kernels/turns.c). */
#ifndef GPTQ_KERNELS_TURNS_H
#define GPTQ_KERNELS_TURNS_H

/* From now on slices take turns (process-wide, once, before jobs start). */
void gptq_turns_enable(void);

/* Wait for this thread's turn (returns at once when turns are off or the
 * thread holds one); every begin is paired with an end. */
void gptq_turn_begin(void);
void gptq_turn_end(void);

/* Slices granted so far (for tests and status). */
unsigned long gptq_turns_granted(void);

#endif
