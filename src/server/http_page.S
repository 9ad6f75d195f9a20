/* http_page.S - the live page (page.html), embedded in the binary as it is. */
    .section .rodata
    .global mmk__http_page
    .global mmk__http_page_end
    .hidden mmk__http_page
    .hidden mmk__http_page_end
mmk__http_page:
    .incbin "src/server/page.html"
mmk__http_page_end:
    .byte 0
    .section .note.GNU-stack,"",@progbits
