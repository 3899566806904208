# blk: drive the first virtio-blk device.
#  - default: print its ID, read sectors 0-7 and print their checksum (each 64-bit
#    word: sum = rol(sum, 1) + word), write one sector (8) from a known pattern and
#    flush; print each request's status byte.
#  - `blk.n=N [blk.len=BYTES]`: N reads of BYTES (default 4096) at advancing sectors,
#    wrapping at the disk's end; print how many failed.
    .include "boot.inc"
    .include "virtio.inc"
    .set QSZ, 8
    .set T_IN, 0
    .set T_OUT, 1
    .set T_FLUSH, 4
    .set T_GET_ID, 8

    .section .text
main:
    mov %rdi, cmdline_ptr(%rip)
    mov $2, %edi                    # VIRTIO_ID_BLOCK
    call virtio_find
    test %rbx, %rbx
    jz nodev
    xor %r12d, %r12d                # no optional features
    call virtio_begin
    test %eax, %eax
    jnz refused
    xor %ecx, %ecx
    mov $QSZ, %edx
    lea desc(%rip), %rsi
    lea avail(%rip), %rdi
    lea used(%rip), %r8
    call virtio_queue
    call virtio_go
    test $0x40, %eax
    jnz refused

    lea k_n(%rip), %rsi
    xor %edx, %edx
    call getarg
    test %rax, %rax
    jnz bench

    mov $T_GET_ID, %eax             # ID
    xor %edx, %edx
    mov $20, %ecx
    mov $3, %r9d
    lea buf(%rip), %r10
    call blk_req
    lea m_id(%rip), %rsi
    call puts
    lea buf(%rip), %rsi
    call puts
    mov $'\n', %al
    mov $COM1, %dx
    out %al, %dx

    mov $T_IN, %eax                 # read sectors 0-7
    xor %edx, %edx
    mov $4096, %ecx
    mov $3, %r9d
    lea buf(%rip), %r10
    call blk_req
    push %rax
    lea m_read(%rip), %rsi
    call puts
    pop %rax
    call putdec
    lea m_sum(%rip), %rsi
    call puts
    lea buf(%rip), %rsi
    mov $512, %ecx
    xor %eax, %eax
1:  rol $1, %rax
    add (%rsi), %rax
    add $8, %rsi
    dec %ecx
    jnz 1b
    call puthex
    lea m_nl(%rip), %rsi
    call puts

    mov $T_OUT, %eax                # write sector 8
    mov $8, %edx
    mov $512, %ecx
    mov $1, %r9d                    # NEXT; the device reads it
    lea pattern(%rip), %r10
    call blk_req
    push %rax
    lea m_write(%rip), %rsi
    call puts
    pop %rax
    call putdec
    lea m_nl(%rip), %rsi
    call puts

    mov $T_FLUSH, %eax              # flush
    xor %edx, %edx
    xor %ecx, %ecx
    mov $3, %r9d
    lea buf(%rip), %r10
    call blk_req
    push %rax
    lea m_flush(%rip), %rsi
    call puts
    pop %rax
    call putdec
    lea m_nl(%rip), %rsi
    call puts
    lea m_done(%rip), %rsi
    call puts
    ret

bench:
    mov %rax, %r13                  # requests left
    lea k_len(%rip), %rsi
    mov $4096, %edx
    call getarg
    mov %rax, %r14                  # bytes per request
    shr $9, %rax
    mov %rax, %r15                  # sectors per request
    mov 0x100(%rbx), %r11d          # capacity in sectors (low half)
    sub %r15, %r11                  # last start sector that fits
    xor %r12d, %r12d                # errors
    xor %edx, %edx                  # first request sets every field
    mov $T_IN, %eax
    mov %r14d, %ecx
    mov $3, %r9d
    lea buf(%rip), %r10
    call blk_req
    test %eax, %eax
    setnz %al
    movzbl %al, %eax
    add %eax, %r12d
    dec %r13
    xor %edx, %edx                  # sector
2:  test %r13, %r13
    jz 4f
    add %r15, %rdx                  # next sector, wrapping at the end
    cmp %r11, %rdx
    jbe 3f
    xor %edx, %edx
3:  mov %rdx, hdr+8(%rip)           # the only store besides the avail index
    incw avail_idx(%rip)
    movl $0, 0x50(%rbx)             # QueueNotify
    movzwl avail_idx(%rip), %eax
5:  cmpw %ax, used_idx(%rip)
    je 6f
    pause
    jmp 5b
6:  cmpb $0, status(%rip)
    je 7f
    inc %r12d
7:  dec %r13
    jmp 2b
4:  lea m_bench(%rip), %rsi
    call puts
    mov %r12d, %eax
    call putdec
    lea m_nl(%rip), %rsi
    call puts
    ret

# blk_req: one request on the device at %rbx: type %eax, sector %rdx; the middle
# descriptor is %ecx bytes at %r10 with flags %r9w. Waits for it; out: %eax = status.
blk_req:
    mov $1, %r11d                   # header -> data -> status, or header -> status
    test %ecx, %ecx                 # when there is no data (QEMU refuses empty buffers)
    jnz 1f
    mov $2, %r11d
1:  mov %r11w, desc+14(%rip)
    mov %eax, hdr(%rip)
    mov %rdx, hdr+8(%rip)
    mov %r10, desc+16(%rip)
    mov %ecx, desc+24(%rip)
    mov %r9w, desc+28(%rip)
    movb $0xff, status(%rip)
    incw avail_idx(%rip)            # every ring slot already holds head 0
    movl $0, 0x50(%rbx)             # QueueNotify: queue 0
    movzwl avail_idx(%rip), %eax
1:  cmpw %ax, used_idx(%rip)
    je 2f
    pause
    jmp 1b
2:  movzbl status(%rip), %eax
    ret

nodev:
    lea m_nodev(%rip), %rsi
    jmp puts
refused:
    lea m_refused(%rip), %rsi
    jmp puts

    .section .data
    .p2align 4
desc:                               # header -> data -> status
    .quad hdr
    .long 16
    .word 1, 1                      # NEXT
    .quad buf
    .long 4096
    .word 3, 2                      # NEXT | WRITE
    .quad status
    .long 1
    .word 2, 0                      # WRITE
    .fill (QSZ - 3) * 2, 8, 0
avail:
    .word 1                         # VIRTQ_AVAIL_F_NO_INTERRUPT
avail_idx:
    .word 0
    .fill QSZ, 2, 0
    .p2align 2
used:
    .word 0
used_idx:
    .word 0
    .fill QSZ, 8, 0
    .p2align 3
hdr:
    .long 0, 0
    .quad 0
status:
    .byte 0xff

    .section .rodata
k_n:       .asciz "blk.n="
k_len:     .asciz "blk.len="
m_id:      .asciz "blk: id "
m_read:    .asciz "blk: read "
m_sum:     .asciz " sum "
m_write:   .asciz "blk: write "
m_flush:   .asciz "blk: flush "
m_done:    .asciz "blk: done\n"
m_bench:   .asciz "blk: bench errors "
m_nodev:   .asciz "blk: no virtio-blk device\n"
m_refused: .asciz "blk: the device refused the driver\n"
m_nl:      .asciz "\n"
pattern:
    .rept 32
    .ascii "roost-blk-write\n"
    .endr

    .section .bss
    .p2align 12
buf:
    .skip 65536
