# spin: loop in registers only; print a tick every 2^20 iterations so a watcher can see
# it runs (and that it does not while paused).
    .include "boot.inc"
    .section .text
main:
    lea start(%rip), %rsi
    call puts
    xor %ebx, %ebx
2:  mov $0x100000, %ecx
1:  dec %ecx
    jnz 1b
    inc %ebx
    lea tick(%rip), %rsi
    call puts
    mov %ebx, %eax
    call putdec
    lea nl(%rip), %rsi
    call puts
    jmp 2b
    .section .rodata
start: .asciz "spin: started\n"
tick:  .asciz "spin: tick "
nl:    .asciz "\n"
