"""Several checks in one run (issue 26): every layer of a file, a config's checks, a layer at
several input points. Above the session, which checks one layer at one point; below the faces,
which only parse and present."""
