"""`dbtwf adopt`: bring a setup made by hand from the guide under management.

``recognise`` (pure) tells the guide's pasted code from dbtwf's own runner, from a backup
dbtwf made and from anything else, and reads off the host, account, scope and key;
``scan`` finds such notebooks and the workflows running them (read-only); ``plan`` makes the
plan of ``Change``s that the one executor (``provision.apply.execute``) carries out; ``flow``
is the use case the CLI calls (choose, work out the environment, plan, ask, carry out);
``give_back`` is what destroy does with what adopt took over.
"""
