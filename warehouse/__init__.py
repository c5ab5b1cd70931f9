"""Everything that touches DuckDB/DuckLake: connecting, migrations, writes, snapshots, views."""
