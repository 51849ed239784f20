-- ampsim schema, version 4: wider event chunks, with a sparse device list.
--
-- `chunk_bits` is the width of a simulation's event chunks: a chunk holds the records of the
-- devices `chunk << chunk_bits ..= (chunk + 1 << chunk_bits) - 1` (device >> chunk_bits). Up to
-- version 3 every chunk was 1024 devices wide (10 bits) with a 128-byte bitmap of its devices
-- in `event_chunks.devices`; simulations created from version 4 on use 14 bits (16,384
-- devices) and store `devices` as the sorted device offsets in the chunk (little-endian u16
-- each), so a day of sparse rows (paying customers, one per chunk) is a few rows, not
-- thousands. Existing simulations keep their 10 bits and their bitmaps.
ALTER TABLE simulations ADD COLUMN chunk_bits INTEGER NOT NULL DEFAULT 10;
