"""Training of patch descriptors: data sources (data), losses, teachers, the trainer and model cards.

Entry point: ``descplug train --config CONFIG.yaml`` (:func:`descplug.train.trainer.run_from_args`).
"""
