"""The course build: student notebooks, executed copies, slides, the answer key (`make course`)."""
