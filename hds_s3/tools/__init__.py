"""Work on whole stores and datasets: consistency checks (fsck), garbage collection, COCO exchange."""
