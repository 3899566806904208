# mmio: write and read an MMIO address no device claims and an unclaimed port, then go on.
    .include "boot.inc"
    .set HOLE, 0xd0000000           # inside the 32-bit MMIO hole, never RAM
    .section .text
main:
    lea msg(%rip), %rsi
    call puts
    mov $HOLE, %ebx
    movl $0x1234, (%rbx)
    mov (%rbx), %eax
    mov %eax, %r12d
    in $0x80, %al                   # unclaimed port
    lea done(%rip), %rsi
    call puts
    cmp $0xffffffff, %r12d
    jne 1f
    lea ones(%rip), %rsi
    call puts
1:  ret
    .section .rodata
msg:  .asciz "mmio: touching 0xd0000000\n"
done: .asciz "mmio: still running\n"
ones: .asciz "mmio: read all-ones\n"
