// picolibc has no pthread.h: single-threaded gthreads (syntax check only).
#include <bits/gthr-single.h>
