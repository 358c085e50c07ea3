// Only __GLIBC_PREREQ is read (bits/os_defines.h of the host libstdc++); there is no glibc here.
#define __GLIBC_PREREQ(maj, min) 0
