;; Loops forever in the core module's start function, during instantiation.
(i32.const 1024)
;;EXTRA
(func $forever (loop $l (br $l)))
(start $forever)
