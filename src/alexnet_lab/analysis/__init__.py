"""The ablation studies' analysis: records -> statistics -> tables, figures, claims table.

    runs.py      reading (and compacting) each job's committed record
    stats.py     paired differences, 95% t-intervals, detectable effects, the verdict rule
                 (stats.judge), Holm's adjustment
    specs.py     what each study compares, the paper's and others' numbers
    lr_search.py claim 1's learning-rate search (what relu_vs_tanh/run.sh runs next)
    tables.py    Markdown tables and the generated blocks of the READMEs
    figures.py   the figures, written byte-for-byte reproducibly
    fig1.py      claim 1's report; ablation.py: claims 2-6; build.py: all of them
    continued.py arms run past the protocol's end (the reference to 48 epochs, run-on arms)

`python -m alexnet_lab.analysis report` (make report) is the entry point; it needs the
dev extras (pandas, matplotlib, scipy).
"""
