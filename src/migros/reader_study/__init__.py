"""A blinded reader study of generated images: two-alternative forced choice between methods.

`pack` builds what readers see (pairs of generated images, real calibration slices, images under random tokens)
and states the study's power (`power`); `pack_format` reads a pack folder; `layout` gives each reader the shared
items in their own order and sides; `store` keeps the answers in SQLite; `server` serves the page (`static/`) on
that store; `cli` is the command line (`migros-reader-study`); `statistics` and `figure` analyse the exported
answers.
"""
