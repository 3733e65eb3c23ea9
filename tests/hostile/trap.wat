;; Traps at once.
unreachable
