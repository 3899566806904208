# fault: drop the IDT and jump to an address no page table maps: #PF with no IDT
# becomes a triple fault, which the monitor must report as a crash.
    .include "boot.inc"
    .section .text
main:
    lea msg(%rip), %rsi
    call puts
    lidt null_idt
    movabs $0x8000000000, %rax      # 512 GiB: PML4 entry 1 is not present
    jmp *%rax
    .section .rodata
msg: .asciz "fault: jumping to an unmapped address\n"
