"""The passes of an alignment job (`repalign.registry.PASSES`), one module each.

Every pass module has ``run(job, configs)``: it plans its units of work (the tasks of
`jobs.tasks`), has the job's actors compute and merge their states (`jobs.engine`), and
records each pair's value in ``job.values`` (`repalign.results.Values`). ``job`` is the
`jobs.alignment.Job` that lists the passes its measures need and runs them in turn.
"""
