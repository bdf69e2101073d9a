"""Reading and using what training runs produce. Library parts: `serving` (a client of an exported
model), `report` (every table of run results), `visualize` (explanation figures). Commands, run with
`python -m introspective_tf.tools.<name>`: compare, report, summarize, serving, benchmark, agreement,
target_content, equivalence. Nothing is imported here, so each command runs as its own `__main__`:
import the part you use (`from introspective_tf.tools import visualize`)."""
