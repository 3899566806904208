# smp: every vCPU prints its APIC id. The boot vCPU reads the CPU count from CPUID,
# starts the others with INIT-SIPI-SIPI through its local APIC, and waits for them.
# The others start in real mode in the trampoline at 0x10000 (linked there by smp.ld).
    .include "boot.inc"
    .set LAPIC_SVR, 0xfee000f0
    .set LAPIC_ICR, 0xfee00300
    .section .text
main:
    mov $1, %eax
    cpuid
    mov %ebx, %r12d
    shr $24, %r12d                  # APIC id
    shr $16, %ebx
    and $0xff, %ebx
    mov %ebx, %r13d                 # logical CPU count
    lea up(%rip), %rsi
    call puts
    mov %r12d, %eax
    call putdec
    lea nl(%rip), %rsi
    call puts
    cmp $1, %r13d
    jbe 3f
    mov $LAPIC_SVR, %ebx
    movl $0x1ff, (%rbx)             # software-enable the local APIC
    mov $LAPIC_ICR, %ebx
    movl $0x000c4500, (%rbx)        # INIT, all excluding self
    movl $0x000c4610, (%rbx)        # SIPI, vector 0x10 -> 0x10000
    movl $0x000c4610, (%rbx)        # second SIPI (ignored by CPUs already running)
    lea -1(%r13), %ecx
1:  pause
    mov ap_count, %eax
    cmp %ecx, %eax
    jb 1b
3:  lea all(%rip), %rsi
    call puts
    mov %r13d, %eax
    call putdec
    lea all2(%rip), %rsi
    call puts
    ret
    .section .rodata
up:   .asciz "smp: cpu "
nl:   .asciz " up\n"
all:  .asciz "smp: "
all2: .asciz " cpus up\n"

    .section .ap, "awx"
    .code16
ap_start:
    cli
    mov %cs, %ax
    mov %ax, %ds
    mov $1, %eax
    cpuid
    shr $24, %ebx                   # APIC id
1:  lock btsw $0, (ap_lock - ap_start)
    jc 1b
    mov $0x3f8, %dx
    mov $(ap_msg - ap_start), %si
2:  lodsb
    test %al, %al
    jz 3f
    out %al, %dx
    jmp 2b
3:  mov %bx, %ax
    mov $10, %cl
    div %cl                         # al = tens, ah = ones
    test %al, %al
    jz 4f
    add $'0', %al
    out %al, %dx
4:  mov %ah, %al
    add $'0', %al
    out %al, %dx
    mov $(ap_msg2 - ap_start), %si
5:  lodsb
    test %al, %al
    jz 6f
    out %al, %dx
    jmp 5b
6:  lock incl (ap_count - ap_start)
    movw $0, (ap_lock - ap_start)
7:  hlt
    jmp 7b
ap_msg:  .asciz "smp: cpu "
ap_msg2: .asciz " up\n"
    .p2align 2
ap_lock:  .word 0
    .p2align 2
ap_count: .long 0
