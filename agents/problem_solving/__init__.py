"""Problem solving: Problem Analyst -> Solution Designer -> Implementer, over in-repo metrics."""
