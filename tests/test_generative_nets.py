"""Score networks: shapes, time dependence, class conditioning, per-sample independence."""
import pytest
import torch

from generative.nets import MLP, GaussianFourierFeatures, UNet


def _small_unet(**kw):
    return UNet(base_channels=16, num_res_blocks=1, **kw)


def test_fourier_features_shape_and_range():
    torch.manual_seed(0)
    emb = GaussianFourierFeatures(16, scale=4.0)
    out = emb(torch.linspace(0, 1, 5))
    assert out.shape == (5, 16) and out.abs().max() <= 1.0
    with pytest.raises(ValueError, match="even"):
        GaussianFourierFeatures(7)


@pytest.mark.parametrize("event_shape", [(2,), (1, 8, 8)])
def test_mlp_shapes_and_time_dependence(event_shape):
    torch.manual_seed(0)
    net = MLP(event_shape, width=32, depth=2)
    x = torch.randn(4, *event_shape)
    out1 = net(x, torch.full((4,), 0.1))
    out2 = net(x, torch.full((4,), 0.9))
    assert out1.shape == x.shape
    assert (out1 - out2).abs().max() > 1e-3
    # scalar t broadcasts to the batch
    assert torch.allclose(net(x, torch.tensor(0.1)), out1)
    with pytest.raises(ValueError, match="shape"):
        net(torch.randn(4, 3), torch.rand(4))
    with pytest.raises(ValueError, match="`t` must be"):
        net(x, torch.rand(3))


@pytest.mark.parametrize("size,channels", [(8, 1), (16, 1), (16, 3), (4, 2)])
def test_unet_shapes_and_time_dependence(size, channels):
    torch.manual_seed(0)
    net = _small_unet(in_channels=channels, image_size=size)
    x = torch.randn(3, channels, size, size)
    out1 = net(x, torch.full((3,), 0.05))
    out2 = net(x, torch.full((3,), 0.95))
    assert out1.shape == x.shape and torch.isfinite(out1).all()
    assert (out1 - out2).abs().max() > 1e-3


def test_unet_rows_are_independent():
    """GroupNorm, not BatchNorm: a row's output does not depend on the other rows."""
    torch.manual_seed(0)
    net = _small_unet(image_size=8)
    x, t = torch.randn(4, 1, 8, 8), torch.rand(4)
    full = net(x, t)
    alone = net(x[1:2], t[1:2])
    # float32: a batch of 4 and of 1 may run on other conv/GEMM kernels, and each evaluation
    # carries its own forward error (~1e-6 absolute for outputs ~1 here, measured against the
    # float64 net), so they differ by up to ~2e-6; the bound is 1e-5 + 1e-5 |y|
    assert torch.allclose(full[1:2], alone, atol=1e-5)
    # float64: the same forward error scaled by u64 / u32 ~ 2e-9, i.e. ~1e-15; 1e-12 leaves
    # 500x and still sees any cross-row coupling (BatchNorm would move it by ~1e-1)
    net64, x64, t64 = net.double(), x.double(), t.double()
    torch.testing.assert_close(net64(x64, t64)[1:2], net64(x64[1:2], t64[1:2]), rtol=0,
                               atol=1e-12)


def test_unet_class_embedding_and_null_label():
    torch.manual_seed(0)
    net = _small_unet(image_size=8, num_classes=10)
    assert net.null_label == 10
    x, t = torch.randn(2, 1, 8, 8), torch.rand(2)
    a = net(x, t, torch.tensor([3, 3]))
    b = net(x, t, torch.tensor([7, 7]))
    assert (a - b).abs().max() > 1e-4
    assert torch.equal(net(x, t), net(x, t, torch.tensor([10, 10])))
    with pytest.raises(ValueError, match="num_classes=None"):
        _small_unet(image_size=8)(x, t, torch.tensor([1, 2]))


@pytest.mark.parametrize("size", [6, 10, 2])
def test_unet_rejects_sizes_not_divisible_by_4(size):
    with pytest.raises(ValueError, match="image_size"):
        UNet(image_size=size)


def test_unet_rejects_wrong_input_shape():
    net = _small_unet(image_size=8)
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\)"):
        net(torch.randn(2, 1, 16, 16), torch.rand(2))


def test_unet_gradients_reach_all_parameters():
    torch.manual_seed(0)
    net = _small_unet(image_size=8, num_classes=3)
    net(torch.randn(2, 1, 8, 8), torch.rand(2), torch.tensor([0, 1])).square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing
