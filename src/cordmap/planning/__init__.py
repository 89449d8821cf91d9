"""Paddle placement planning over the lumbosacral enlargement (docs/planning.md).

- `geometry`: the cord along its centreline (arc length, volumes, cross-sectional area);
- `enlargement`: the target segments, labelled or estimated;
- `paddles` (+ `paddles.json`): paddle models as data;
- `coverage`, `search`: coverage at a position, the best distinct positions;
- `vertebral`: positions in vertebral terms and X-ray landmarks;
- `planner`: `Planner.prepare(labels).plan()` / `.assess(...)`, returning the records of
  `results` and `measured` (full precision; `to_json()` is plan.json); `files`: case
  folders and JSON output; `pam50`, `synthetic`: the worked example and cords with
  analytic answers.
"""
