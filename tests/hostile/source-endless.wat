;; A source that never finishes paging: every answer asks for one more page.
;; The host stops after its round limit and the query fails, naming it.
;;START
(i32.const 1024)
;;NEXT
(i32.const 1536)
;;EXTRA
(data (i32.const 1024) "\00\00\00\00" "\00\08\00\00" "\01\00\00\00" "\00\00\00\00" "\00\00\00\00")
(data (i32.const 1536) "\00\00\00\00" "\00\00\00\00" "\00\08\00\00" "\01\00\00\00" "\00\00\00\00" "\00\00\00\00")
(data (i32.const 2048) "\00\00\00\00" "\00\0c\00\00" "\05\00\00\00" "\00\00\00\00" "\00\00\00\00" "\00\00\00\00" "\00\00\00\00")
(data (i32.const 3072) "/page")
