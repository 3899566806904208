# cmdline: print the kernel command line found through boot_params or hvm_start_info.
    .include "boot.inc"
    .section .text
main:
    push %rdi
    lea pre(%rip), %rsi
    call puts
    pop %rsi
    test %rsi, %rsi
    jz 1f
    call puts
1:  lea nl(%rip), %rsi
    call puts
    ret
    .section .rodata
pre: .asciz "cmdline: "
nl:  .asciz "\n"
