"""The pipeline: the stages on a case folder, and the only code that knows the folder.

A case folder holds one subject's image, labels and everything made from them, and
`case.json` records each stage's inputs and outputs with checksums and its parameters
(`cordmap.case`). Each stage below opens the case, reuses its recorded output when it is
current (`stages.is_current`, the one freshness rule) and otherwise computes it with the
area packages, which take and return objects, writes it and records the stage:

    imports  import_case      image, annotations -> image, protocol, manual labels
             (`cordmap.ingest`)
    segment  segment_case     image, model file -> desc-unet labels and levels
             renumber_case    (`cordmap.learn.infer`, `cordmap.anatomy.numbering`)
    mesh     mesh_case        labels -> mesh/ (exports, summary, npz)   (`cordmap.mesh`)
             case_meshes      the mesh stage's meshes, meshing first when there are none
    plan     run_plan         labels [, paddle file] -> plan/plan.json  (`cordmap.planning`)
             run_assess       ... -> plan/assessment.json
             current_plan     the plan the viewer and the report read
    view     build_case_viewer  image, labels, meshes, plan -> viewer/  (`cordmap.viewer`)
             serve_case, export_case
    report   write_case_report  image, labels, plan, meshes -> report/<subject>_report.html
             (`cordmap.report`)

`training` reads case folders as learning data (`cordmap train`, `finetune`, `evaluate`).
`stages` says which files each stage reads (`stage_inputs`) and runs one by name
(`run_stage`, for `cordmap batch`). A stage's up-to-date output is reused, so that
`auto.run_auto` (`cordmap auto`: import -> segment -> validate -> mesh -> plan -> viewer
site -> report) and `demo.run_demo` (`cordmap demo`, on the phantom) do each piece of work
once: the case is meshed once, and the viewer and the report read its meshes and plan.
The submodules are imported on use (several import slowly).
"""
