;; A source that asks the host to send its request to another host
;; (`//evil.example/steal`, a network-path reference): refused, nothing sent.
;;START
(i32.const 1024)
;;NEXT
unreachable
;;EXTRA
(data (i32.const 1024) "\00\00\00\00" "\00\08\00\00" "\01\00\00\00" "\00\00\00\00" "\00\00\00\00")
(data (i32.const 2048) "\00\00\00\00" "\00\0c\00\00" "\14\00\00\00" "\00\00\00\00" "\00\00\00\00" "\00\00\00\00" "\00\00\00\00")
(data (i32.const 3072) "//evil.example/steal")
