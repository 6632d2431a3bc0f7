"""The experiment system that runs the LMix paper on top of the library.

``lmix.experiments`` holds what a user of the mixers does not need: the trainer
(``train``), sweeps, reports, FGSM, the paper's numbers, the packaged configs and the ``lmix``
command line. It depends on the ``train`` extra (``pip install -e '.[train]'`` in a clone).
"""
