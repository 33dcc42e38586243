"""A pprof profile (profile.proto) built and encoded in plain Python.

The format is google/pprof's proto/profile.proto (proto3): a Profile of
sample types, samples (location ids, values, labels), locations (one line
each, here), functions and a string table whose entry 0 is "".  Only the
parts statsprof needs are written, with the field numbers of that file:

    Profile:   sample_type 1, sample 2, mapping 3, location 4, function 5,
               string_table 6, time_nanos 9, duration_nanos 10,
               period_type 11, period 12, comment 13, default_sample_type 14
    ValueType: type 1, unit 2                      (string table indexes)
    Sample:    location_id 1 (packed), value 2 (packed), label 3
    Label:     key 1, str 2, num 3, num_unit 4
    Mapping:   id 1, filename 5, has_functions 7, has_filenames 8,
               has_line_numbers 9
    Location:  id 1, mapping_id 2, line 4
    Line:      function_id 1, line 2
    Function:  id 1, name 2, system_name 3, filename 4, start_line 5

The encoding is the protobuf wire format: varints (wire type 0) and
length-delimited fields (wire type 2); negative int64 values take ten bytes
as two's complement, as protobuf does.  Go's pprof reads the result
(tools/tests/test_convert.py checks it with `go tool pprof`).  No protobuf
library or generated code is needed.
"""

import gzip

__all__ = ["Profile", "encode_varint"]


def encode_varint(n):
    """The protobuf varint of an int64/uint64 (negative: two's complement)."""
    if not -(1 << 63) <= n < 1 << 64:
        raise ValueError("varint out of range: %r" % (n,))
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _key(field, wire):
    return encode_varint(field << 3 | wire)


def _int(field, n):
    """A varint field; proto3 leaves zero values out."""
    return _key(field, 0) + encode_varint(n) if n else b""


def _bytes(field, data):
    return _key(field, 2) + encode_varint(len(data)) + data


def _packed(field, values):
    return _bytes(field, b"".join(encode_varint(v) for v in values)) if values else b""


class Profile:
    """Collects strings, functions, locations and samples; ``encode()``
    gives the serialized profile, ``write_gz(out)`` the gzipped file that
    pprof tools read.

    Strings are interned on first use (``string(s)`` gives the index).
    ``function(name, filename, start_line)`` and ``location(function_id,
    line)`` return ids, the same id for the same arguments.
    """

    def __init__(self, sample_types, default_sample_type=None,
                 time_nanos=0, duration_nanos=0, period_type=None, period=0,
                 comments=(), mapping_file=""):
        self._strings = {"": 0}
        self._functions = {}
        self._locations = {}
        self._samples = []
        self.sample_types = [(self.string(t), self.string(u))
                             for t, u in sample_types]
        self.default_sample_type = (self.string(default_sample_type)
                                    if default_sample_type else 0)
        self.time_nanos = time_nanos
        self.duration_nanos = duration_nanos
        self.period_type = ((self.string(period_type[0]),
                             self.string(period_type[1]))
                            if period_type else None)
        self.period = period
        self.comments = [self.string(c) for c in comments]
        # One mapping that says functions, files and lines are known, so
        # pprof does not try to symbolize addresses (there are none).
        self.mapping_file = self.string(mapping_file)

    def string(self, s):
        i = self._strings.get(s)
        if i is None:
            i = self._strings[s] = len(self._strings)
        return i

    def function(self, name, filename="", start_line=0, system_name=None):
        key = (name, filename, start_line,
               name if system_name is None else system_name)
        fid = self._functions.get(key)
        if fid is None:
            fid = self._functions[key] = len(self._functions) + 1
        return fid

    def location(self, function_id, line=0):
        key = (function_id, line)
        lid = self._locations.get(key)
        if lid is None:
            lid = self._locations[key] = len(self._locations) + 1
        return lid

    def sample(self, location_ids, values, labels=()):
        """``location_ids`` leaf first; ``values`` one per sample type;
        ``labels``: (key, str_value or None, num_value, num_unit) tuples."""
        if len(values) != len(self.sample_types):
            raise ValueError("%d values for %d sample types"
                             % (len(values), len(self.sample_types)))
        self._samples.append((tuple(location_ids), tuple(values),
                              tuple(labels)))

    @property
    def nsamples(self):
        return len(self._samples)

    def _label(self, key, str_value, num, num_unit):
        return (_int(1, self.string(key))
                + _int(2, self.string(str_value) if str_value is not None else 0)
                + _int(3, num) + _int(4, self.string(num_unit) if num_unit else 0))

    def encode(self):
        out = []
        for t, u in self.sample_types:
            out.append(_bytes(1, _int(1, t) + _int(2, u)))
        for locs, values, labels in self._samples:
            body = _packed(1, locs) + _packed(2, values)
            for lab in labels:
                body += _bytes(3, self._label(*lab))
            out.append(_bytes(2, body))
        out.append(_bytes(3, _int(1, 1) + _int(5, self.mapping_file)
                          + _int(7, 1) + _int(8, 1) + _int(9, 1)))
        for (fid, line), lid in self._locations.items():
            out.append(_bytes(4, _int(1, lid) + _int(2, 1) + _bytes(
                4, _int(1, fid) + _int(2, line))))
        # labels and functions may add strings: the string table comes last
        funcs = []
        for (name, filename, start_line, system_name), fid in self._functions.items():
            funcs.append(_bytes(5, _int(1, fid) + _int(2, self.string(name))
                                + _int(3, self.string(system_name))
                                + _int(4, self.string(filename))
                                + _int(5, start_line)))
        tail = [_int(9, self.time_nanos), _int(10, self.duration_nanos)]
        if self.period_type:
            tail.append(_bytes(11, _int(1, self.period_type[0])
                               + _int(2, self.period_type[1])))
        tail.append(_int(12, self.period))
        tail.append(_packed(13, self.comments))
        tail.append(_int(14, self.default_sample_type))
        strings = [_bytes(6, s.encode("utf-8")) for s in self._strings]
        return b"".join(out + funcs + strings + tail)

    def write_gz(self, out):
        """Write the gzipped profile to the binary file object ``out``
        (mtime 0, so the same profile gives the same bytes)."""
        out.write(gzip.compress(self.encode(), mtime=0))
