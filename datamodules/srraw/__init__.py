"""SR-RAW (Zhang et al., CVPR 2019): on-disk layout, the official ``tform.txt``/``wb.txt`` files,
per-scene alignment, pair geometry, the pair dataset and :class:`~datamodules.srraw.datamodule.SRRAWDataModule`
(exported as ``datamodules.SRRAWDataModule``)."""
