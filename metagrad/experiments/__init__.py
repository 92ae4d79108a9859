"""Experiments as data: a run is a ``config.Config`` (a preset of ``presets*.py`` plus ``--set`` overrides),
built from the ``registry`` of tasks, models and learners and trained by ``runner`` through the one loop
``metagrad.fit``; a paper table is a ``sweep.Spec`` of such configs (``specs/``), run and tabulated by
``sweep`` and ``records`` (``metagrad reproduce``)."""
