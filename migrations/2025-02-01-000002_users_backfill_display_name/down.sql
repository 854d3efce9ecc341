-- Data only: the copy is harmless to keep, and phase 1's down drops the column anyway.
SELECT 1;
