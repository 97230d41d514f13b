"""What requests and responses seen by the tests have in common: an ordered
list of (name, value) headers, looked up case-insensitively."""


class HeaderLookup:
    headers = ()

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]
