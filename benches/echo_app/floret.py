serverapp = None
