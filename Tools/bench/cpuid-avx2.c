// An AVX2-only processor, as far as CPUID tells: a preload library for benchmarks on AVX-512
// machines, so that every program of a run (ours, onnxruntime, numpy, OpenBLAS) chooses the kernels
// it would choose on an AVX2+FMA processor such as AMD Zen 2/3 (nothing here changes what the
// processor can do, only what CPUID reports).
//
//   gcc -O2 -shared -fPIC -o /tmp/cpuid-avx2.so Tools/bench/cpuid-avx2.c
//   LD_PRELOAD=/tmp/cpuid-avx2.so diffbir bench ... --peer onnxruntime
//
// Needs Linux's CPUID faulting (`cpuid_fault` in /proc/cpuinfo): the constructor makes CPUID trap
// (arch_prctl ARCH_SET_CPUID, inherited by threads and children; LD_PRELOAD carries it across
// exec), and the SIGSEGV handler runs the real instruction with faulting off, clears the AVX-512,
// AVX-VNNI and AMX bits of leaf 7 (subleaves 0 and 1), and steps over it. Any other SIGSEGV is
// re-raised with the default action. Set CPUID_AVX2_QUIET=1 to silence the one-line notice.
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

static int set_cpuid(int enabled) { return (int)syscall(SYS_arch_prctl, ARCH_SET_CPUID, enabled); }

static void handler(int sig, siginfo_t *info, void *context) {
    ucontext_t *uc = context;
    greg_t *r = uc->uc_mcontext.gregs;
    const uint8_t *ip = (const uint8_t *)r[REG_RIP];
    if (!(ip[0] == 0x0F && ip[1] == 0xA2)) {
        (void)info;
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    uint32_t leaf = (uint32_t)r[REG_RAX], sub = (uint32_t)r[REG_RCX], a, b, c, d;
    set_cpuid(1);
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(leaf), "c"(sub));
    set_cpuid(0);
    if (leaf == 7 && sub == 0) {
        // EBX: AVX512 F, DQ, IFMA, PF, ER, CD, BW, VL.
        b &= ~((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30) | (1u << 31));
        // ECX: AVX512 VBMI, VBMI2, VNNI, BITALG, VPOPCNTDQ.
        c &= ~((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14));
        // EDX: 4VNNIW, 4FMAPS, VP2INTERSECT, AMX-BF16, AVX512-FP16, AMX-TILE, AMX-INT8.
        d &= ~((1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) | (1u << 24) | (1u << 25));
    } else if (leaf == 7 && sub == 1) {
        // EAX: AVX-VNNI, AVX512-BF16, AVX-IFMA, AVX-VNNI-INT8 and the rest of the newer extensions.
        a &= ~((1u << 4) | (1u << 5) | (1u << 23));
        d &= ~((1u << 4) | (1u << 5) | (1u << 10));
    }
    r[REG_RAX] = a;
    r[REG_RBX] = b;
    r[REG_RCX] = c;
    r[REG_RDX] = d;
    r[REG_RIP] += 2;
}

__attribute__((constructor)) static void install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, NULL) != 0 || set_cpuid(0) != 0) {
        fprintf(stderr, "cpuid-avx2: CPUID faulting unavailable here; CPUID is unchanged\n");
        return;
    }
    const char *quiet = getenv("CPUID_AVX2_QUIET");
    if (!quiet || strcmp(quiet, "1") != 0) fprintf(stderr, "cpuid-avx2: CPUID reports AVX2+FMA without AVX-512/VNNI/AMX (pid %d)\n", (int)getpid());
}
