"""The benchmark's scenarios, one module each (run in this order by ``python -m bench``)."""
