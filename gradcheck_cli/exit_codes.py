"""The exit codes, a promise to CI scripts. This module imports nothing, so that the entry
point's guard (entry.py) can use it when the rest of the package cannot be imported.

0 every check passed; 1 a gradient check failed; 2 bad usage or bad input; 3 an internal error
(a bug in gradcheck); 4 inconclusive (no entry failed, but some could not be verified);
129, 130, 143 hang-up, Ctrl-C, terminated; 141 the reader of stdout went away.
"""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_INCONCLUSIVE = 4
EXIT_HANGUP = 129
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
EXIT_TERMINATED = 143

EXIT_CODES = {"passed": EXIT_OK, "failed": EXIT_FAILED, "inconclusive": EXIT_INCONCLUSIVE}
"""The exit code of each verdict."""
