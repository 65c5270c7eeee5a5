"""Why a gradient is wrong: the pattern in the numbers of a failed check (issue 14).

A check says which entries of an input's gradient disagree with the finite differences; this
package says what the disagreement looks like, from those numbers alone (no further evaluations
of f): the analytic gradient is a constant times the true one (a missing 1/N), has the wrong
sign, is zero, is wrong only on some rows/columns/slices, is the true one transposed, is off by
a multiple of the input itself (a regulariser's factor) or by a constant.

Pure numpy and stdlib: no click, no rich. Renderers read `Diagnosis.message` or `to_document()`.

- `search`: `diagnose`, the entry point, and `PATTERNS`, the order the patterns are tried in.
- `result`: `Diagnosis`, what was found, and `KINDS`, every kind it can be.
- `fitting`: one input's numbers (`CheckedNumbers`) and when a pattern fits them.
- the patterns, one family a module: `factors` (scale, sign, zero), `regions` (confined),
  `rearranged` (transposed), `offsets` (input-proportional, offset); `unexplained` when none fits.
- `wording`: entry names, regions and numbers, spelled the same in every message.
"""
