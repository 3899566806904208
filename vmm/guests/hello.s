# hello: print one line on COM1, then reset.
    .include "boot.inc"
    .section .text
main:
    lea msg(%rip), %rsi
    call puts
    ret
    .section .rodata
msg: .asciz "Hello from a Roost guest\n"
