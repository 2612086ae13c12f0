"""Postqueue, postsuper and showq: the control socket, its op table and Mailroot listings."""
