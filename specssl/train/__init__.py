"""The training system: config, Lightning module and data module, callbacks, ``pretrain``."""
