import torch


def rotate_pairs(x, freqs_cis):
    """The pair layout is spelled with dimensions unpacked from the shape: not proven to be the
    last dimension's adjacent channels for every rank."""
    b, s, h, d = x.shape
    xc = torch.view_as_complex(x.float().reshape(b, s, h, -1, 2))  # refuse: not (*x.shape[:-1], -1, 2)
    return torch.view_as_real(xc * freqs_cis).flatten(3)
