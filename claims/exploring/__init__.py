"""Exploring a cached run outside the claims: labelled arrays, exported files, a drill-down into the top units."""
